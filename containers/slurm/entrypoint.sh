#!/bin/bash
# Entry point of every testbed container: ROLE is db, ctl, compute or login.
# The testbed's per-run configuration is mounted read-only at /etc/testbed.
set -euo pipefail
role=${1:?usage: testbed-entrypoint db|ctl|compute|login}

install_config() {
    install -d -m 0755 /etc/slurm
    for f in /etc/testbed/slurm/*; do install -m 0644 "$f" /etc/slurm/; done
    if [ -f /etc/slurm/slurmdbd.conf ]; then
        chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 0600 /etc/slurm/slurmdbd.conf
    fi
    install -o munge -g munge -m 0400 /etc/testbed/munge.key /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
}

start_munge() {
    runuser -u munge -- /usr/sbin/munged --num-threads=4
}

wait_for() {  # wait_for SECONDS CMD... : poll until CMD succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}

make_homes() {
    for u in alice bob carol dave; do
        # dave's home is a mount point of its own: new when it is empty
        if [ ! -d /home/$u ] || [ -z "$(ls -A /home/$u)" ]; then
            install -d -o $u -g hpcusers -m 0700 /home/$u
            cp -rT /etc/skel /home/$u && chown -R $u:hpcusers /home/$u
        fi
        install -d -o $u -g hpcusers -m 0700 /home/$u/.ssh
        install -o $u -g hpcusers -m 0600 /etc/testbed/ssh/authorized_keys /home/$u/.ssh/authorized_keys
    done
}

start_directory_client() {
    # users and groups come from the testbed's directory (containers/ldap)
    install -d -o nslcd -g nslcd /run/nslcd
    /usr/sbin/nslcd
    wait_for 60 getent passwd alice
}

install_config
start_directory_client
start_munge
case "$role" in
    db)
        install -d -o mysql -g mysql /run/mysqld
        runuser -u mysql -- /usr/sbin/mariadbd --skip-networking=0 --bind-address=127.0.0.1 \
            >/var/log/mariadb.log 2>&1 &
        wait_for 60 mariadb-admin --protocol=socket ping
        /usr/sbin/slurmdbd
        ;;
    ctl)
        /usr/sbin/slurmctld
        ;;
    compute)
        /usr/sbin/slurmd
        ;;
    login)
        make_homes
        # The hub's own identity on the login node: status queries for every user's
        # jobs run as this unprivileged account, never as root or as a user.
        if ! id hpcbridge >/dev/null 2>&1; then
            useradd -r -u 2100 -g hpcusers -d /var/lib/hpcbridge -m -s /bin/bash hpcbridge
        fi
        install -d -o hpcbridge -g hpcusers -m 0700 /var/lib/hpcbridge/.ssh
        install -o hpcbridge -g hpcusers -m 0600 /etc/testbed/ssh/authorized_keys \
            /var/lib/hpcbridge/.ssh/authorized_keys
        /usr/sbin/sshd -E /var/log/sshd.log
        ;;
    *)
        echo "unknown role $role" >&2; exit 2 ;;
esac
echo "testbed $role ready"
exec sleep infinity
