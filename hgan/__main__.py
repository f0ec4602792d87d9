from hgan.cli import main

main()
