"""The demo's own parts that need no web page: hosting on ZeroGPU (``demo.zerogpu``) and the scheduler that
advances every visitor's chain together (``demo.scheduler``). ``demo`` uses ``model``; ``model`` never uses it."""
