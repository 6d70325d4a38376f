# fish completion for fowld; generated from the argument parser by `make completions` (packaging/generate.py): do not edit.


# Parse current commandline:
# - _shtab_fowld_cmdpath=(sub)command path seen so far
# - _shtab_fowld_npos=number of positional arguments given after it
# - options are skipped based on _shtab_fowld_opts_with_value & _shtab_fowld_commands lists
function _shtab_fowld_scan
  set -g _shtab_fowld_cmdpath ''
  set -g _shtab_fowld_npos 0
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
        if contains -- $t $_shtab_fowld_opts_with_value
          set expect_value 1
        end
        continue
      case '*'
        if test $_shtab_fowld_npos -eq 0
          set -l candidate $t
          if test -n "$_shtab_fowld_cmdpath"
            set candidate "$_shtab_fowld_cmdpath $t"
          end
          if contains -- $candidate $_shtab_fowld_commands
            set -g _shtab_fowld_cmdpath $candidate
            continue
          end
        end
        set -g _shtab_fowld_npos (math $_shtab_fowld_npos + 1)
    end
  end
end

# Condition helper: true if the current (sub)command path equals the given one.
function _shtab_fowld_using
  _shtab_fowld_scan
  test "$_shtab_fowld_cmdpath" = "$argv"
end

set -g _shtab_fowld_commands 
set -g _shtab_fowld_opts_with_value --code-length --direct-address --embedded-mailbox --mailbox --peer-lost-timeout --ping-interval --profiles --transit-relay

complete -c fowld -e
complete -c fowld -f

complete -c fowld -n _shtab_fowld_using -s h -l help -d 'show this help message and exit'
complete -c fowld -n _shtab_fowld_using -l version -d 'show program'"'"'s version number and exit'
complete -c fowld -n _shtab_fowld_using -l stdio -d 'run one session driven by JSON lines'
complete -c fowld -n _shtab_fowld_using -l mailbox -x -d 'mailbox server (default ws://relay.magic-wormhole.io:4000/v1)'
complete -c fowld -n _shtab_fowld_using -l transit-relay -x -d 'transit relay for when no direct path works (default tcp:transit.magic-wormhole.io:4001); '"'"'none'"'"' to use no relay'
complete -c fowld -n _shtab_fowld_using -l embedded-mailbox -x -d 'run a mailbox server in this process on ENDPOINT (e.g. tcp:4000) and use it'
complete -c fowld -n _shtab_fowld_using -l relay-only -d 'never connect directly; always go through the relay'
complete -c fowld -n _shtab_fowld_using -l ping-interval -x -d 'Dilation keep-alive interval; a path silent for two intervals is replaced (default 10)'
complete -c fowld -n _shtab_fowld_using -l direct-address -x -d 'offer the peer only this address for direct connections (repeatable; default: every local address; env FOWL_DIRECT_ADDRESSES=a,b)'
complete -c fowld -n _shtab_fowld_using -l code-length -x -d 'words in new codes'
complete -c fowld -n _shtab_fowld_using -l dry-run -d 'install, uninstall: say what would change, change nothing'
complete -c fowld -n _shtab_fowld_using -l force -d 'install: replace unit files that `fowld install` did not write'
complete -c fowld -n _shtab_fowld_using -l profiles -xka "(__fish_complete_directories)" -d 'daemon: where profiles are read (default $XDG_CONFIG_HOME/fowl/profiles)'
complete -c fowld -n _shtab_fowld_using -l peer-lost-timeout -x -d 'with no connection to the peer this long, the daemon restarts a fixed-code session (to meet a restarted peer; default 60) and a --stdio session ends (default 300); 0 never'
complete -c fowld -n _shtab_fowld_using -s v -l verbose -d 'more log output on stderr'
complete -c fowld -n '_shtab_fowld_using; and test $_shtab_fowld_npos -eq 0' -ka "daemon install uninstall" -d 'daemon: run the D-Bus service (the default without --stdio; what the systemd unit runs); install: write the systemd user unit (ExecStart= this fowld) and the D-Bus activation file, then reload your user manager; uninstall: stop the service and remove those files'
