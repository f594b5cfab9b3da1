"""The local stack: AWS emulated by moto, the OpenAI emulator, and Lambda's event sources."""
