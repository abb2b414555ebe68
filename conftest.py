# The suite drives the plugin the way a user does: through pytest's own `pytester`.
pytest_plugins = ["pytester"]
