"""A plain `pip install .` packages every study folder, with no hand-kept list."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_wheel_holds_every_study_package(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    files = tracked.stdout.split() if tracked.returncode == 0 else None
    if files:
        for name in files:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    else:
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "results", "report"))
    # A study that no list names: it must be packaged too.
    (src / "studies" / "zz_new_study" / "sub").mkdir(parents=True)
    (src / "studies" / "zz_new_study" / "__init__.py").write_text("")
    (src / "studies" / "zz_new_study" / "sub" / "__init__.py").write_text("")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("lookinside-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    studies = [p.parent for p in (src / "studies").glob("**/__init__.py")]
    assert len(studies) >= 3
    for folder in studies:
        for module in folder.glob("*.py"):
            packaged = "lookinside/studies/" + module.relative_to(src / "studies").as_posix()
            assert packaged in names, packaged
    assert "lookinside/cli.py" in names and not any(n.startswith("platform/") for n in names)
