"""Packages: the platform and every folder under studies/, found rather than listed, so that a
new study is packaged by a plain `pip install .` (metadata and dependencies: pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=["lookinside", "lookinside.studies",
                *(f"lookinside.studies.{name}" for name in find_packages("studies"))])
