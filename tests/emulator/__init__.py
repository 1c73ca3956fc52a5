"""Tests of the Graph/Entra emulator, against real HTTPS servers on 127.0.0.1."""
