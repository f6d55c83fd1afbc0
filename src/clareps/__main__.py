from clareps.cli import main

main()
