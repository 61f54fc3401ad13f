# One provider for every region: Azure resources name their location.
provider "azurerm" {
  subscription_id = var.subscription_id
  features {}
}
