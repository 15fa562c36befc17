from esus.cli.main import main

raise SystemExit(main())
