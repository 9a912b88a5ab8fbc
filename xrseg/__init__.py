"""The assembly: the `xrseg` command line and the demo, the only code that imports both the
engine (the server) and the clients (what runs on the user's side). See xrseg/cli.py."""
