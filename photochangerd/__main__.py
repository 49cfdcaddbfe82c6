from photochangerd.cli import main

main()
