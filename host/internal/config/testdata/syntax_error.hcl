host {
  name = "h"
worker "w" {
  class = "echo"
