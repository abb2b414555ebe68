import sys
from pathlib import Path

# The suite drives the plugin the way a user does: through pytest's own `pytester`.
pytest_plugins = ["pytester"]

# loso_testing/ (the tests' training and export support; not shipped in the wheel) is imported
# from the repository root, whatever the import mode or the folder pytest is started from.
_ROOT = str(Path(__file__).resolve().parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
