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

set -g _shtab_fowlctl_commands invite accept start list status close ping watch profiles reload check
set -g _shtab_fowlctl_opts_with_value --bus --timeout

complete -c fowlctl -e
complete -c fowlctl -f

complete -c fowlctl -n _shtab_fowlctl_using -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n _shtab_fowlctl_using -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n _shtab_fowlctl_using -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a invite -d 'Start a session from PROFILE and print a new code for your peer.'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using invite' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using invite; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name (see `fowlctl profiles`)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a accept -d 'Join a peer'"'"'s session with the CODE they gave you.'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using accept' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using accept; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name (see `fowlctl profiles`)'
complete -c fowlctl -n '_shtab_fowlctl_using; and test $_shtab_fowlctl_npos -eq 0' -a start -d 'Start a profile that has a fixed code.'
complete -c fowlctl -n '_shtab_fowlctl_using start' -s h -l help -d 'show this help message and exit'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l json -d 'machine-readable output (stable keys)'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l bus -x -d 'D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l no-wait -d 'return once the session has started'
complete -c fowlctl -n '_shtab_fowlctl_using start' -l timeout -x -d 'stop waiting after SECONDS and close the session (default: wait until Ctrl-C)'
complete -c fowlctl -n '_shtab_fowlctl_using start; and test $_shtab_fowlctl_npos -eq 0' -ka "(__fowl_profiles)" -d 'profile name (see `fowlctl profiles`)'
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
