//! Model clients: OpenAI-compatible and Anthropic.
