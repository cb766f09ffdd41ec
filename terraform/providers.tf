# Credentials come from the environment, never from this repository:
#   CLOUDFLARE_API_TOKEN                        (Load Balancers Write, Account LB Monitors/Pools Write)
#   YC_TOKEN or YC_SERVICE_ACCOUNT_KEY_FILE, YC_CLOUD_ID
provider "cloudflare" {}

provider "yandex" {
  folder_id = var.yandex_folder_id
  zone      = var.yandex_default_zone
}
