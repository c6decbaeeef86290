"""`python -m anyclaude`: the same as the `anyclaude` command."""

from anyclaude.cli import main

if __name__ == "__main__":
    main()
