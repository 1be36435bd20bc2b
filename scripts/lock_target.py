"""Print the target a lock file is valid for: ``python X.Y, <sys.platform>, <machine>`` (setup.sh compares)."""
import platform
import sys

print(f"python {sys.version_info[0]}.{sys.version_info[1]}, {sys.platform}, {platform.machine()}")
