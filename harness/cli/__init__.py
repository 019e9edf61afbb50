"""The `archscale` command line: the parser (main.py), the arguments commands share (args.py) and one thin module
per command (parse, call, print; the work lives in the other subpackages)."""
