#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (for tests, CI and trying rmlab without a cluster): slurmctld,
# slurmd, munge, and slurmdbd on MariaDB (without accounting, submitit cannot tell a job that died without a
# result from one still running). A fake 2-GPU GRES lets --gpus requests schedule. Idempotent: rerun to repair.
# Needs root (apt-get and daemons). `make slurm-up` runs it; `make slurm-down` stops everything.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (apt-get install and system daemons)" >&2; exit 1; fi
PKGS="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  echo "slurm-up: installing $PKGS"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi

H=$(hostname -s)
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 2048 ))
CPUS=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/mysqld /var/lib/fakegpu
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$H
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
KillWait=5
MinJobAge=300
MaxArraySize=1001
JobRequeue=1
PreemptType=preempt/none
GresTypes=gpu
NodeName=$H NodeAddr=127.0.0.1 Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
for i in 0 1; do [ -c /var/lib/fakegpu/gpu$i ] || mknod /var/lib/fakegpu/gpu$i c 1 3; done  # /dev/null clones
echo "NodeName=$H Name=gpu File=/var/lib/fakegpu/gpu[0-1]" > /etc/slurm/gres.conf

# munge (authentication)
chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
fi

# MariaDB + slurmdbd (accounting: sacct, which submitit polls)
chown mysql:mysql /run/mysqld
if ! mariadb -e 'select 1' >/dev/null 2>&1; then
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 </dev/null &
  for _ in $(seq 150); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
printf '%s\n' AuthType=auth/munge DbdHost=localhost DbdAddr=127.0.0.1 SlurmUser=root PidFile=/run/slurmdbd.pid \
  LogFile=/var/log/slurm/slurmdbd.log StorageType=accounting_storage/mysql StorageHost=localhost StorageUser=slurm \
  StoragePass=slurmpw StorageLoc=slurm_acct_db > /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive /run/slurmdbd.pid || /usr/sbin/slurmdbd
for _ in $(seq 150); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.2; done

alive /run/slurmctld.pid || /usr/sbin/slurmctld
alive /run/slurmd.pid || /usr/sbin/slurmd
for _ in $(seq 300); do
  state=$(sinfo -h -o %T 2>/dev/null | head -1)
  case "$state" in idle|mixed|allocated) break;; down*|drain*) scontrol update nodename="$H" state=resume >/dev/null 2>&1 || true;; esac
  sleep 0.2
done
sinfo -h -o %T | grep -qE 'idle|mixed|allocated' || { echo "slurm-up: the node did not come up; see /var/log/slurm/" >&2; exit 1; }
echo "slurm-up: $(sinfo -h -o '%P %a %D nodes %T, %c cpus, %G')"
