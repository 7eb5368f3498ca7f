from ikv_local.cli import main

main()
