"""The audited browser terminal: the gate (who may open what), live sessions (manager), recordings (asciicast v2)."""
