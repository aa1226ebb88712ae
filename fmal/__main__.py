from fmal.cli import main

main()
