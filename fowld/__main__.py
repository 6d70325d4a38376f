from fowld.cli import main

main()
