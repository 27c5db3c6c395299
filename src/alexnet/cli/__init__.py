"""The console scripts (``pyproject.toml``'s ``[project.scripts]``): each parses its command line and calls the
library; ``command.py`` is how every Hydra command runs. They never import each other."""
