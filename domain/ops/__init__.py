"""Operations: the backout switches."""
