from textlstm.cli import main

main()
