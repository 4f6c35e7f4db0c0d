"""Research runners: the ablation, the recipe comparison and the localisation studies.

Run each from the repository root as a module, e.g. `python -m experiments.recipe_comparison`.
"""
