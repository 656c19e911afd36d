"""Reading a recipe: YAML with line numbers, the recipe model, its stage graph, and the registry of kinds."""
