"""A generated module's user-code wheel, built once per content: a rerun reuses the one there.

TFX packages a component's module file as a wheel every time a pipeline is
compiled (``udf_utils.UserModuleFilePipDependency.resolve`` ->
``package_user_module_file``: a ``setup.py bdist_wheel`` subprocess per
component, about a second each on 2 cores, four per demo run) and writes it as
``<pipeline_root>/_wheels/tfx_user_code_<component id>-0.0+<hash>-py3-none-any.whl``,
``<hash>`` the sha256 of every ``.py`` file of the module's folder
(``udf_utils._get_version_hash``). That path is what the component's cache key
holds. The same name means the same sources went in, and TFX writes the file
by copy-then-rename, so one already there is whole: it is reused instead of
built again. A wheel that is not there (a changed module, a first run, a
remote module file, which TFX copies to a folder of its own first) is built by
TFX as before.

Imports TFX: only :func:`pipelines.build.builder.build_pipeline` imports this.
"""
from __future__ import annotations

import os
import re

from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_component
from tfx.dsl.io import fileio


def wheel_name(component_id: str, version_hash: str) -> str:
    """The file name TFX's wheel build gives a component's user-code wheel (the distribution
    ``tfx-user-code-<id>``, normalised as wheel file names are: lower case, ``_`` runs)."""
    distribution = re.sub(r"[-_.]+", "_", f"tfx-user-code-{component_id}").lower()
    return f"{distribution}-0.0+{version_hash}-py3-none-any.whl"


class ReusedModuleWheel(base_component._PipDependencyFuture):  # pylint: disable=protected-access
    """TFX's module-wheel dependency, resolved to the wheel already built for these sources."""

    def __init__(self, built: udf_utils.UserModuleFilePipDependency):
        self.built = built

    def existing_wheel(self, pipeline_root: str) -> str:
        """The path of the wheel TFX would build, if it is there already; else ``''``."""
        spec = self.built.component.spec.exec_properties
        module_file = spec.get(self.built.module_file_key)
        if not (isinstance(module_file, str) and module_file.endswith(".py") and pipeline_root
                and "://" not in module_file and os.path.isfile(module_file)):
            return ""
        folder = os.path.dirname(os.path.abspath(module_file))
        sources = [name for name in os.listdir(folder) if name.endswith(".py")]
        version = udf_utils._get_version_hash(folder, sources)  # pylint: disable=protected-access
        wheel = os.path.join(pipeline_root, "_wheels",
                             wheel_name(self.built.component.id, version))
        return wheel if fileio.exists(wheel) else ""

    def resolve(self, pipeline_root: str):
        wheel = self.existing_wheel(pipeline_root)
        if not wheel:
            return self.built.resolve(pipeline_root)  # TFX builds it (and names it)
        spec = self.built.component.spec.exec_properties
        module = os.path.basename(spec[self.built.module_file_key])[:-len(".py")]
        # what TFX's own resolve sets: the module inside the wheel, no module file
        spec[self.built.module_path_key] = f"{module}@{wheel}"
        spec[self.built.module_file_key] = None
        return wheel


def reuse_module_wheels(components) -> None:
    """Makes each component's module-wheel dependency reuse a wheel already built for the same
    module sources (in place; components without a module file are left as they are)."""
    for component in components:
        found = getattr(component, "_pip_dependencies", None)
        if found:
            component._pip_dependencies = [  # pylint: disable=protected-access
                ReusedModuleWheel(d) if isinstance(d, udf_utils.UserModuleFilePipDependency)
                else d for d in found]
