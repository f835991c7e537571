"""The tool-calling agent: model providers, tools, prompts, structured outputs, the loop."""
