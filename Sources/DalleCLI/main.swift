print("dalle: not yet")
