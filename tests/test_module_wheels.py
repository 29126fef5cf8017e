"""A module's user-code wheel is built once per content (pipelines/build/components/module_wheels.py).

Real TFX components and TFX's own wheel build: the first resolution builds the wheel
(``setup.py bdist_wheel``), a second one of the same module reuses that file, with the
same module path in the component's properties (its cache key); a changed module builds
a new wheel.
"""
import os

from pipelines.build import codegen
from test_codegen import example


def _transform(module_file):
    from tfx.components import Transform
    from tfx.types import Channel, standard_artifacts

    return Transform(examples=Channel(type=standard_artifacts.Examples),
                     schema=Channel(type=standard_artifacts.Schema), module_file=module_file)


def _resolved(module_file, root, reuse=True):
    """``(module_path property, pip dependencies)`` of a Transform resolved under ``root``."""
    from pipelines.build.components.module_wheels import reuse_module_wheels

    component = _transform(module_file)
    if reuse:
        reuse_module_wheels([component])
    component._resolve_pip_dependencies(root)
    return component.spec.exec_properties["module_path"], component._pip_dependencies


def test_a_wheel_built_for_the_same_module_is_reused_and_a_changed_one_is_built(tmp_path):
    from pipelines.build.components.module_wheels import wheel_name
    from tfx.components.util import udf_utils

    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path / "modules"))
    root = str(tmp_path / "tfx")
    built_path, [built] = _resolved(paths["transform"], root, reuse=False)  # TFX alone
    folder = os.path.dirname(paths["transform"])
    version = udf_utils._get_version_hash(folder, ["transform_module.py"])
    assert os.path.basename(built) == wheel_name("Transform", version)  # TFX's own name
    assert built_path == f"transform_module@{built}"
    stamp = os.stat(built).st_mtime_ns, os.stat(built).st_ino

    again_path, again = _resolved(paths["transform"], root)
    assert (again_path, again) == (built_path, [built])  # the same cache key
    assert (os.stat(built).st_mtime_ns, os.stat(built).st_ino) == stamp  # not built again

    with open(paths["transform"], "a", encoding="utf-8") as handle:
        handle.write("# changed\n")
    changed_path, [changed] = _resolved(paths["transform"], root)
    assert changed != built and os.path.exists(changed) and changed_path != built_path
    assert sorted(os.listdir(os.path.join(root, "_wheels"))) == sorted(
        [os.path.basename(built), os.path.basename(changed)])


def test_a_component_id_is_normalised_as_the_wheel_build_names_it():
    from pipelines.build.components.module_wheels import wheel_name

    assert wheel_name("RefitTransform", "ab") == (
        "tfx_user_code_refittransform-0.0+ab-py3-none-any.whl")
    assert wheel_name("My.Odd--Id", "cd") == "tfx_user_code_my_odd_id-0.0+cd-py3-none-any.whl"
