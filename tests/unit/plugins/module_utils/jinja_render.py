"""Test-only: render one of the role's templates (roles/rotate/templates) the way the role does,
through ansible-core's template lookup, with plain variables. The differential tests compare it
with the Python port until the role calls the port instead (issue 9) and the template goes."""
import json
import os

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core 2.18: every template string is trusted
    def trust_as_template(value):
        return value

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "roles", "rotate")
REFERENCE = os.path.normpath(os.path.join(ROLE, "templates"))
init_plugin_loader()


def render_text(name, variables):
    path = os.path.join(REFERENCE, name)
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template("{{ lookup('ansible.builtin.template', '%s') }}" % path))


def render_json(name, variables):
    out = render_text(name, variables)
    return json.loads(out) if isinstance(out, str) else out
