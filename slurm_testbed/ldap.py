"""The testbed's directory: people and groups in OpenLDAP, as at a center.

Every node resolves users and groups from it (nslcd, containers/base), and the hub
authenticates against it (jupyterhub-ldapauthenticator). Each ``testbed up`` writes a
fresh directory: the admin password, each user's password (hashed in the LDIF; in clear
only in the state folder, 0600, for ``hpcbridge up`` to print) and the LDIF itself go to
the run folder mounted read-only at ``/etc/testbed`` (files 0600, readable by root only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

SUFFIX = "dc=hpcbridge,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
GROUP = "hpcusers"
GID = 2000
#: the testbed's users and their uids (dave: the tiny home of disk-full faults)
UIDS = {"alice": 2001, "bob": 2002, "carol": 2003, "dave": 2004}
FIRST_NEW_UID = 2101
#: a login name adduser accepts (and that a Slurm association and a path can hold)
NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
#: where ldapauthenticator finds a user from her login name
BIND_DN_TEMPLATE = f"uid={{username}},{PEOPLE}"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ssha(password: str) -> str:
    """``{SSHA}`` hash of a password, as slapd compares it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # the scheme slapd compares
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def person_ldif(user: str, uid: int, password: str) -> str:
    return (f"dn: uid={user},{PEOPLE}\n"
            "objectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {user}\ncn: {user}\nsn: {user}\nuidNumber: {uid}\ngidNumber: {GID}\n"
            f"homeDirectory: /home/{user}\nloginShell: /bin/bash\n"
            f"userPassword: {ssha(password)}\n")


def directory_ldif(passwords: dict[str, str]) -> str:
    """The whole directory: the suffix, people, groups, the testbed's users."""
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: hpcbridge\no: hpcbridge testbed\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: cn={GROUP},{GROUPS}\nobjectClass: posixGroup\ncn: {GROUP}\n"
        f"gidNumber: {GID}\n" + "".join(f"memberUid: {u}\n" for u in UIDS),
    ]
    parts += [person_ldif(user, uid, passwords[user]) for user, uid in UIDS.items()]
    return "\n".join(parts)


def write_directory(etc_dir: Path, state_dir: Path) -> dict[str, str]:
    """This run's directory into etc_dir/ldap; the users' passwords (also in state_dir)."""
    passwords = {user: secrets.token_urlsafe(9) for user in UIDS}
    _write_private(etc_dir / "ldap" / "admin_password", secrets.token_urlsafe(24))
    _write_private(etc_dir / "ldap" / "directory.ldif", directory_ldif(passwords))
    _write_private(state_dir / "passwords.json", json.dumps(passwords))
    return passwords


def passwords(state_dir: Path) -> dict[str, str]:
    """The users' passwords of the running testbed (as ``testbed up`` made them)."""
    try:
        return dict(json.loads((state_dir / "passwords.json").read_text()))
    except (OSError, ValueError):
        return {}


def remember_password(state_dir: Path, user: str, password: str) -> None:
    known = passwords(state_dir)
    known[user] = password
    _write_private(state_dir / "passwords.json", json.dumps(known))
