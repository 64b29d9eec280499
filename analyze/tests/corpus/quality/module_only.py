#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Only a docstring, comments and module-level statements."""

# settings
DEBUG = False
LEVELS = [x for x in range(5) if x and not DEBUG]
if DEBUG or LEVELS:
    print(LEVELS)
