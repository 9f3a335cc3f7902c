#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the Slurm suites: munge, slurmdbd on the local MariaDB
# (127.0.0.1:3306, root without a password), slurmctld and slurmd, all on 127.0.0.1, no systemd, no cgroups.
# Idempotent: daemons already running are left alone, so it can be run before every suite.
# Usage: docker/start-slurm.sh            start (or check) the cluster; prints "slurm ready: ..."
#        docker/start-slurm.sh stop       stop the daemons (after a configuration change: stop, then start)
# Needs the Debian packages slurm-wlm slurm-client munge slurmdbd (.ci/run installs them).
set -euo pipefail
LOG=/var/log/slurm
HOST=$(hostname -s)

# A pid file proves little here: a killed daemon can stay a zombie for a while, and pids are reused.
running() { # running PIDFILE COMM
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

stop_daemon() { # stop_daemon PIDFILE COMM: TERM, up to 10 s, then KILL
  local pid i
  if running "$1" "$2"; then
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do running "$1" "$2" || break; sleep 0.1; done
    running "$1" "$2" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

munged_pid() { ps -o pid=,stat=,comm= -u munge 2>/dev/null | awk '$3 == "munged" && $2 !~ /^Z/ { print $1; exit }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# until_true SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails naming WHAT after SECONDS.
until_true() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "start-slurm: $what within $limit s failed; logs in $LOG" >&2
      return 1
    fi
    sleep 0.2
  done
}

if [ "${1:-start}" = stop ]; then
  stop_daemon /run/slurmd.pid slurmd
  stop_daemon /run/slurmctld.pid slurmctld
  stop_daemon /run/slurmdbd.pid slurmdbd
  pid=$(munged_pid)
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  echo "slurm stopped"
  exit 0
fi

for pkg in slurm-wlm slurm-client munge slurmdbd; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || { echo "start-slurm: package $pkg is not installed" >&2; exit 1; }
done

# slurmd looks its node up by the host name, which must resolve.
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >>/etc/hosts

# munge: /run/munge is on tmpfs and only systemd would create it again.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key --force
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if [ -z "$(munged_pid)" ]; then
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
fi
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
until_true 10 "munge" munge_works

# Accounting lives in the machine's MariaDB, which must be running.
port_open 3306 || { echo "start-slurm: no MariaDB answers on 127.0.0.1:3306 (accounting needs it)" >&2; exit 1; }

# The accounting database, its user and the configuration (rewritten only when it changed, so a running
# cluster is not disturbed).
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

read -r CPUS MEMORY < <(slurmd -C | awk '/^NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["CPUs"], v["RealMemory"] }')
MEMORY=$((MEMORY * 9 / 10)) # more than slurmd finds would drain the node
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOG"

write_if_changed() { # write_if_changed FILE MODE: stdin becomes FILE when it differs; says whether it did
  local next
  next=$(mktemp)
  cat >"$next"
  if cmp -s "$next" "$1"; then rm -f "$next"; return 1; fi
  install -m "$2" -o slurm -g slurm "$next" "$1"
  rm -f "$next"
}

changed=0
write_if_changed /etc/slurm/slurm.conf 0644 <<CONF && changed=1
ClusterName=tesp
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups on these machines: resources are counted, not enforced.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Start jobs at once rather than after the default 3 s batch delay.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=300
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
write_if_changed /etc/slurm/slurmdbd.conf 0600 <<CONF && changed=1
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
if [ "$changed" = 1 ] && { running /run/slurmctld.pid slurmctld || running /run/slurmd.pid slurmd || running /run/slurmdbd.pid slurmdbd; }; then
  echo "start-slurm: the configuration changed; restarting the daemons"
  stop_daemon /run/slurmd.pid slurmd
  stop_daemon /run/slurmctld.pid slurmctld
  stop_daemon /run/slurmdbd.pid slurmdbd
fi

# Daemons in order, each wait bounded.
running /run/slurmdbd.pid slurmdbd || /usr/sbin/slurmdbd
until_true 20 "slurmdbd on port 6819" port_open 6819
cluster_known() { sacctmgr -i -n list cluster format=cluster 2>/dev/null | grep -qw tesp; }
cluster_known || sacctmgr -i add cluster tesp >/dev/null
until_true 20 "registering the cluster in slurmdbd" cluster_known

running /run/slurmctld.pid slurmctld || /usr/sbin/slurmctld
controller_up() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
until_true 30 "slurmctld answering" controller_up

running /run/slurmd.pid slurmd || /usr/sbin/slurmd
node_state=
node_ready() {
  node_state=$(timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
  case $node_state in
    idle* | mixed* | allocated* | completing*) return 0 ;;
    down* | drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  return 1
}
until_true 30 "node $HOST becoming ready" node_ready || { echo "start-slurm: node $HOST is '$node_state'" >&2; exit 1; }
echo "slurm ready: node $HOST $node_state, CPUs=$CPUS, RealMemory=$MEMORY MiB"
