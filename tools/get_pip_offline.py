"""Stand-in for the get-pip.py that ansible-test downloads from a host we cannot reach.

ansible-test runs it as `python get_pip_X_Y.py [pip options] pip==X.Y [--no-setuptools] [--no-wheel]`
inside a fresh virtual environment. Bootstrap pip from the standard library's ensurepip, then let
that pip install the exact version asked for from the package index.
"""
import ensurepip
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}

ensurepip.bootstrap(upgrade=True)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
