"""Makes a Python process see this library the way the training image does.

The image holds only the custom components' code (`pipelines/build/components/`) and
the runtime the generated modules import (`transform/`, `trainer/`), copied to
a folder on PYTHONPATH by `twotower image`, never the installed library. Here
the library is installed in development mode, which adds an import finder for
`pipelines`, `trainer` and `transform`; a task process of the executed-spec
test starts with this folder on PYTHONPATH, and this file (run by Python's
`site` at start-up) removes that finder, so all three come from the image's
copy (and the rest of `pipelines` is not importable at all), as in the image.
"""
import sys

sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", "").startswith("__editable___twotower")]
for name in [n for n in sys.modules if n.split(".")[0] in ("pipelines", "trainer", "transform")]:
    del sys.modules[name]
