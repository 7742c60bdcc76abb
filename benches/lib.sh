# Sourced by the bench scripts (from the checkout's root): what they all compute the same way.

# utime+stime ticks of a process and all its descendants (NSD serves from forked grandchildren).
descendants() { local child; for child in $(pgrep -P "$1" || true); do echo "$child"; descendants "$child"; done; }
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(descendants "$1"); do
    # Fields after the command name, which may hold spaces ("nsd: server 1"): utime, stime are 12, 13.
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12+$13}' || echo 0)))
  done
  echo $total
}

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# a / b with two decimals (0 when b is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b>0 ? a/b : 0)}'; }

# dnsperf's report on stdin, the server's CPU ticks before and after -> "qps lost lat_ms cpu_s_per_100k".
dnsperf_figures() {
  awk -v b="$1" -v a="$2" -v tck="$(getconf CLK_TCK)" '
    /Queries completed:/ {done=$3} /Queries lost:/ {lost=$3}
    /Queries per second:/ {qps=$4} /Average Latency/ {lat=$4*1000}
    END {printf "%.0f %d %.3f %.3f\n", qps, lost, lat, (done>0 ? (a-b)/tck/(done/100000) : 0)}'
}

# Rows "name qps lost lat cpu" in $work/results -> med[name,2..5], the medians per name.
declare -gA med
fill_medians() {
  local name col
  for name in "$@"; do
    for col in 2 3 4 5; do
      med[$name,$col]=$(awk -v s="$name" -v c=$col '$1==s {print $c}' "$work/results" | median)
    done
  done
}
