# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.access_key_verify runs in the controller's process: see plugin_utils/_in_process.py."""

from ansible_collections.rekey.aws.plugins.modules import access_key_verify
from ansible_collections.rekey.aws.plugins.plugin_utils._in_process import ModuleInProcess


class ActionModule(ModuleInProcess):

    MODULE = access_key_verify
