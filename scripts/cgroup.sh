# Sourced by the scripts that cap a server's CPU (bench-dns.sh, soak.sh):
#
#   make_cpu_cgroup NAME QUOTA_US PERIOD_US
#
# makes the cgroup NAME (v2, or the v1 cpu hierarchy) whose processes may
# use QUOTA_US of CPU time per PERIOD_US, and sets `cgroup` to its
# directory and `root_procs` to the root's cgroup.procs (to move a process
# out again). The caller removes it (rmdir) once its processes are gone.
make_cpu_cgroup() {
  local name=$1 quota=$2 period=$3
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # The cpu controller must be on for the root's children to have
    # cpu.max (if it cannot be turned on, the check below says so).
    if ! grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control; then
      { echo +cpu > /sys/fs/cgroup/cgroup.subtree_control; } 2>/dev/null || true
    fi
    cgroup=/sys/fs/cgroup/$name
    mkdir -p "$cgroup"
    [ -f "$cgroup/cpu.max" ] || { echo "no cpu.max in $cgroup: cannot cap a server"; exit 1; }
    echo "$quota $period" > "$cgroup/cpu.max"
    root_procs=/sys/fs/cgroup/cgroup.procs
  else
    cgroup=/sys/fs/cgroup/cpu/$name
    mkdir -p "$cgroup"
    echo "$period" > "$cgroup/cpu.cfs_period_us"
    echo "$quota" > "$cgroup/cpu.cfs_quota_us"
    root_procs=/sys/fs/cgroup/cpu/cgroup.procs
  fi
}
