"""Per-request edge checks: body limits and traffic shaping."""
