"""Runs one recipe with the original Content Composer (0.1.2) and prints
its final outputs as JSON on stdout.

Usage: python cc_run.py RECIPE INPUTS.json   (in a folder whose
`custom_functions/` holds the Python functions, as Content Composer
discovers them from the working directory).

Its log goes to stderr at WARNING (its default is DEBUG, which prints the
whole state at every node and would cost it more than its work here).
The model client reads OPENAI_BASE_URL and OPENAI_API_KEY (esperanto).
"""

import asyncio
import json
import sys


def main():
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    from content_composer import execute_workflow, parse_recipe

    recipe = parse_recipe(sys.argv[1])
    with open(sys.argv[2]) as f:
        inputs = json.load(f)
    outputs = asyncio.run(execute_workflow(recipe, inputs))
    json.dump(outputs, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
