"""Only for the one file pyproject.toml cannot place: `ikv-preload.pth` in site-packages.

It loads the system C++ runtime when Python starts (ikv_local/cxx_runtime.py says why).
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_spec = importlib.util.spec_from_file_location(
    "cxx_runtime", Path(__file__).parent / "ikv_local" / "cxx_runtime.py"
)
_runtime = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runtime)


class BuildWithPth(build_py):
    def run(self) -> None:
        super().run()
        Path(self.build_lib, "ikv-preload.pth").write_text(_runtime.PTH_LINE)


setup(cmdclass={"build_py": BuildWithPth})
