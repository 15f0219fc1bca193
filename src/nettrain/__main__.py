try:   # Ctrl-C while the command is still importing: exit as Ctrl-C does, not with a traceback
    from .cli import main
except KeyboardInterrupt:
    import sys
    print("nettrain: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
