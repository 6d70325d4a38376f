# fish completion for fowlctl; generated from the argument parser by `make completions` (packaging/generate.py): do not edit.

# Custom Preamble
function __fowl_profiles
  set -l dir $XDG_CONFIG_HOME
  string match -q -- '/*' "$dir"; or set dir $HOME/.config
  for f in $dir/fowl/profiles/*.yaml
    string replace -r '\.yaml$' '' -- (path basename -- $f)
  end
end

# End Custom Preamble

# Parse current commandline:
# - _shtab_fowlctl_cmdpath=(sub)command path seen so far
# - _shtab_fowlctl_npos=number of positional arguments given after it
# - options are skipped based on _shtab_fowlctl_opts_with_value & _shtab_fowlctl_commands lists
function _shtab_fowlctl_scan
  set -g _shtab_fowlctl_cmdpath ''
  set -g _shtab_fowlctl_npos 0
  set -l tokens (commandline -opc)
  set -e tokens[1]
  set -l expect_value 0
  for t in $tokens
    if test $expect_value -eq 1
      set expect_value 0
      continue
    end
    switch "$t"
      case '--*=*'
        continue
      case '-*'
        if contains -- $t $_shtab_fowlctl_opts_with_value
          set expect_value 1
        end
        continue
      case '*'
        if test $_shtab_fowlctl_npos -eq 0
          set -l candidate $t
          if test -n "$_shtab_fowlctl_cmdpath"
            set candidate "$_shtab_fowlctl_cmdpath $t"
          end
          if contains -- $candidate $_shtab_fowlctl_commands
            set -g _shtab_fowlctl_cmdpath $candidate
            continue
          end
        end
        set -g _shtab_fowlctl_npos (math $_shtab_fowlctl_npos + 1)
    end
  end
end

# Condition helper: true if the current (sub)command path equals the given one.
function _shtab_fowlctl_using
  _shtab_fowlctl_scan
  test "$_shtab_fowlctl_cmdpath" = "$argv"
end

set -g _shtab_fowlctl_commands invite accept start offer want withdraw unwant list status close ping watch top profiles reload check pairings forget
set -g _shtab_fowlctl_opts_with_value --answer-timeout --bus --expires --interval --lifetime --mailbox --offer --pair --timeout --transit-relay --want

complete -c fowlctl -e
complete -c fowlctl -f

complete -c fowlctl -n _shtab_fowlctl_using -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n _shtab_fowlctl_using -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n _shtab_fowlctl_using -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n _shtab_fowlctl_using -l version -d 'show program'"'"'s version number and exit'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a invite -d 'Start a session and print a new code for your peer.'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l offer -x -d 'offer a service the peer may reach, e.g. ssh=tcp:localhost:22 or web=8000 (repeatable)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l want -x -d 'want the peer'"'"'s service NAME, listening on LISTEN (e.g. 2222 or tcp:2222); without LISTEN a free loopback port, shown once connected (repeatable)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l mailbox -x -d 'mailbox server (default: fowld'"'"'s)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l transit-relay -x -d 'transit relay, tcp:HOST:PORT (default: fowld'"'"'s)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l no-qr -d 'do not show the code as a QR code (shown only on a terminal)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l pair -x -d 'store a pairing called NAME once the peer is connected'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l expires -x -d 'the pairing'"'"'s expiry with --pair; else the invitation'"'"'s (15m, 30d)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l lifetime -x -d 'end the session after TIME (2h, 90m)'
complete -c fowlctl -n '_shtab_fowlctl_using invite; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name; or use --offer/--want'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a accept -d 'Join a peer'"'"'s session with the CODE they gave you.'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l offer -x -d 'offer a service the peer may reach, e.g. ssh=tcp:localhost:22 or web=8000 (repeatable)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l want -x -d 'want the peer'"'"'s service NAME, listening on LISTEN (e.g. 2222 or tcp:2222); without LISTEN a free loopback port, shown once connected (repeatable)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l mailbox -x -d 'mailbox server (default: fowld'"'"'s)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l transit-relay -x -d 'transit relay, tcp:HOST:PORT (default: fowld'"'"'s)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l answer-timeout -x -d 'give up (and close the session) when no peer has answered the code within SECONDS, as when nobody is waiting with it (default 60)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l pair -x -d 'store a pairing called NAME once the peer is connected'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l expires -x -d 'the pairing'"'"'s expiry with --pair; else the invitation'"'"'s (15m, 30d)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l lifetime -x -d 'end the session after TIME (2h, 90m)'
complete -c fowlctl -n '_shtab_fowlctl_using accept; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name; or use --want/--offer'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a start -d 'Start a profile that has a fixed code.'
complete -c fowlctl -n '_shtab_fowlctl_using start' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using start; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name (see `fowlctl profiles`)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a offer -d 'Offer the peer of a running session one more service.'
complete -c fowlctl -n '_shtab_fowlctl_using offer' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using offer' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using offer' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a want -d 'Listen for one more of the peer'"'"'s services in a running session.'
complete -c fowlctl -n '_shtab_fowlctl_using want' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using want' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using want' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a withdraw -d 'Stop offering a service in a running session.'
complete -c fowlctl -n '_shtab_fowlctl_using withdraw' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using withdraw' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using withdraw' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a unwant -d 'Stop listening for one of the peer'"'"'s services in a running session.'
complete -c fowlctl -n '_shtab_fowlctl_using unwant' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using unwant' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using unwant' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a list -d 'List sessions: id, profile, state, peer path, connections, bytes.'
complete -c fowlctl -n '_shtab_fowlctl_using list' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using list' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using list' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a status -d 'Show everything about one session, or about all of them.'
complete -c fowlctl -n '_shtab_fowlctl_using status' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using status' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using status' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a close -d 'Close a session (its peer sees it end).'
complete -c fowlctl -n '_shtab_fowlctl_using close' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using close' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using close' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a ping -d 'Measure the round trip to a session'"'"'s peer.'
complete -c fowlctl -n '_shtab_fowlctl_using ping' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using ping' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using ping' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a watch -d 'Print fowld'"'"'s events live, one line each, until Ctrl-C.'
complete -c fowlctl -n '_shtab_fowlctl_using watch' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using watch' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using watch' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a top -d 'A live view of sessions and connections, with rates and totals (on a terminal).'
complete -c fowlctl -n '_shtab_fowlctl_using top' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using top' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using top' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using top' -l interval -x -d 'seconds between redraws'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a profiles -d 'List the profiles fowld loaded, and the files it could not load.'
complete -c fowlctl -n '_shtab_fowlctl_using profiles' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using profiles' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using profiles' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a reload -d 'Make fowld read its profiles again.'
complete -c fowlctl -n '_shtab_fowlctl_using reload' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using reload' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using reload' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a check -d 'Validate profile files offline (fowld is not needed).'
complete -c fowlctl -n '_shtab_fowlctl_using check' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using check' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using check' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using check; and test $_shtab_fowlctl_npos -ge 0' -ka "(__fish_complete_path (commandline -ct))" -d 'profile files (NAME.yaml)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a pairings -d 'List the pairings this computer keeps (peers it meets again with no code).'
complete -c fowlctl -n '_shtab_fowlctl_using pairings' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using pairings' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using pairings' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a forget -d 'Forget a pairing: it can never meet again (a connected peer forgets it too).'
complete -c fowlctl -n '_shtab_fowlctl_using forget' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using forget' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using forget' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
