"""twotower: TFX + TensorFlow Recommenders two-tower retrieval pipelines from one config."""
import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
version = {}
with open(os.path.join(here, "pipelines", "version.py"), encoding="utf-8") as handle:
    exec(handle.read(), version)

setup(
    name="twotower",
    version=version["__version__"],
    description="Generate and run TFX + TFRS two-tower retrieval pipelines from one config",
    packages=find_packages(include=["pipelines", "pipelines.*", "trainer", "transform"]),
    package_data={"pipelines.data.sql": ["googlesql_functions.txt"]},
    python_requires=">=3.10,<3.11",
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow>=2.16,<2.17",
        "tf-keras>=2.16,<2.17",
        "tensorflow-transform==1.16.0",
        "tensorflow-recommenders==0.7.7",
        "apache-beam[gcp]==2.59.0",
        "dill",
        "pyyaml",
    ],
    entry_points={"console_scripts": ["twotower=pipelines.cli.main:main"]},
)
