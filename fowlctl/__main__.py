from fowlctl.cli import main

main()
