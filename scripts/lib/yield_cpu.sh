# Sourced by the long study scripts. Where the kernel groups processes by session (autogroup), nice alone does
# not yield to other sessions, so a script that leads its own session (started with setsid) lowers its
# session's group to NICE (default 19) as well. Never a terminal's: a script started without setsid shares
# its caller's session, and then the group is left alone (docs/guide/precision.md).
if [[ $(ps -o sid= -p $$ | tr -d ' ') == "$$" && -w /proc/self/autogroup ]]; then
  echo "${NICE:-19}" 2> /dev/null > /proc/self/autogroup || true
fi
