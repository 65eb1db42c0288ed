#!/bin/bash
# Load this run's directory (/etc/testbed/ldap/directory.ldif) and serve it on port 389.
set -euo pipefail
install -d -o openldap -g openldap -m 0700 /run/slapd /var/lib/ldap
hash=$(slappasswd -T /etc/testbed/ldap/admin_password)
sed "s|^rootpw ROOTPW$|rootpw $hash|" /etc/ldap/slapd.conf.in > /etc/ldap/slapd.conf
chown root:openldap /etc/ldap/slapd.conf && chmod 0640 /etc/ldap/slapd.conf
rm -rf /var/lib/ldap/*
slapadd -q -f /etc/ldap/slapd.conf -l /etc/testbed/ldap/directory.ldif  # root: the LDIF is 0600
chown -R openldap:openldap /var/lib/ldap
/usr/sbin/slapd -f /etc/ldap/slapd.conf -h "ldap:///" -u openldap -g openldap
echo "testbed ldap ready"
exec sleep infinity
