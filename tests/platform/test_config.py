import dataclasses

import pytest

from lookinside import config as cfg
from lookinside.config import ConfigError, param


@dataclasses.dataclass(frozen=True)
class Toy:
    epochs: int = param(10, "epochs", low=1, high=1000)
    lr: float = param(0.1, "learning rate", low=1e-6, high=1.0)
    act: str = param("tanh", "activation", choices=("tanh", "relu"))
    widths: tuple[int, ...] = param((4, 3), "widths", low=1, high=64)
    flag: bool = param(False, "a switch")
    path: str | None = param(None, "a file", path=True)

    def __post_init__(self):
        if self.act == "relu" and self.epochs > 500:
            raise ValueError("relu runs may not exceed 500 epochs")


def test_parse_each_type():
    assert cfg.parse_value(Toy, "epochs", "12") == 12
    assert cfg.parse_value(Toy, "lr", "1e-3") == 1e-3
    assert cfg.parse_value(Toy, "widths", "10-7-5") == (10, 7, 5)
    assert cfg.parse_value(Toy, "flag", "true") is True
    assert cfg.parse_value(Toy, "path", "none") is None


@pytest.mark.parametrize("name,text", [("epochs", "ten"), ("epochs", "1.5"), ("lr", "nan"),
                                       ("flag", "maybe"), ("widths", "4-x-y")])
def test_wrong_type_is_one_line_error(name, text):
    with pytest.raises(ConfigError) as err:
        cfg.parse_value(Toy, name, text)
    assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("values,needle", [
    ({"epochs": -1}, "[1, 1000]"), ({"epochs": 0}, "epochs"), ({"lr": 2.0}, "lr"),
    ({"act": "gelu"}, "one of tanh, relu"), ({"widths": (4, 0)}, "widths"),
    ({"nope": 1}, "unknown field 'nope'"), ({"epochs": 1.5}, "integer"),
    ({"path": "/no/such/file"}, "no such file"), ({"act": "relu", "epochs": 900}, "500 epochs"),
])
def test_build_rejects_bad_values(values, needle):
    with pytest.raises(ConfigError) as err:
        cfg.build(Toy, values)
    assert needle in str(err.value)


def test_build_accepts_and_normalises(tmp_path, monkeypatch):
    f = tmp_path / "data.mat"
    f.write_text("x")
    monkeypatch.chdir(tmp_path)
    c = cfg.build(Toy, {"epochs": 5, "lr": 1, "widths": [8, 2], "path": "data.mat"})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.widths == (8, 2)
    assert c.path == str(f)
    assert cfg.from_dict(Toy, cfg.to_dict(c)) == c


def test_preset_grid_with_set_and_grid_overrides():
    from lookinside.studies.information_bottleneck import STUDY
    assert len(STUDY.configs("laptop")) == 30
    # --set of a swept field fixes it; --grid replaces a sweep.
    only_tanh = STUDY.configs("laptop", {"activation": "tanh"}, {"seed": [7, 8]})
    assert [(c.activation, c.seed) for c in only_tanh] == [("tanh", 7), ("tanh", 8)] * 3
    assert sorted({c.train_fraction for c in only_tanh}) == [0.05, 0.45, 0.85]
    assert STUDY.grid_size("laptop") == 30


def test_preset_cases_are_a_union_of_grids_and_a_set_can_merge_them():
    from lookinside.study import Preset, Study
    study = Study("cases", "t", Toy, {"p": Preset("d", {"lr": 0.5}, {"epochs": [1, 2]},
                                                  cases=[{"widths": [(4,), (8,)]}, {"lr": [0.1], "epochs": [9]}])},
                  train=None, tables={}, figures=None)
    got = [(c.epochs, c.widths, c.lr) for c in study.configs("p")]
    assert got == [(1, (4,), 0.5), (1, (8,), 0.5), (2, (4,), 0.5), (2, (8,), 0.5), (9, (4, 3), 0.1)]
    assert study.grid_size("p") == 5 and study.preset("p").swept() == {"epochs", "widths", "lr"}
    # A --set of a value that some cases list picks those cases.
    assert [(c.epochs, c.lr) for c in study.configs("p", {"lr": 0.1})] == [(9, 0.1)]
    # A --set of a value no case lists fixes the field in every case; trials that become equal run once.
    assert [(c.epochs, c.widths) for c in study.configs("p", {"epochs": 3, "lr": 0.2})] == [
        (3, (4,)), (3, (8,)), (3, (4, 3))]
    assert [(c.epochs, c.widths) for c in study.configs("p", {"epochs": 1, "widths": (2,), "lr": 0.5})] == [(1, (2,))]


@dataclasses.dataclass(frozen=True)
class WithFolder:
    folder: str | None = param(None, "a folder", path="dir")


def test_folder_field_must_be_an_existing_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert cfg.build(WithFolder, {"folder": "sub"}).folder == str(tmp_path / "sub")
    for value in ("file", "/no/such/folder"):
        with pytest.raises(ConfigError, match="no such folder"):
            cfg.build(WithFolder, {"folder": value})
