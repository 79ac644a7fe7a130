"""The smart-device assistant: intents, emotion and slots in context, feature recommendation, grounded replies."""
