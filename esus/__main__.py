from esus.cli import main

raise SystemExit(main())
