from pathlib import Path

# The checkout, for files that are not package data (deploy/, the bench's working directory).
REPO_ROOT = Path(__file__).resolve().parent.parent
